"""Media helpers any pipeline may use: Pillow decoding and thumbnails, PDF rendering, ThumbHash."""
