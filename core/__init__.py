"""The bottom layer every other imports: the exception tree and small file helpers."""
