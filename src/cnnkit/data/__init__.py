"""Annotations -> AnnotationTable -> dataset -> loader. Never imports model/train/infer."""
