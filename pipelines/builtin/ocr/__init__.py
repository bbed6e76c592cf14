"""The ``ocr`` pipeline: tesseract over images and PDF pages, text layers read, not OCR'd."""
