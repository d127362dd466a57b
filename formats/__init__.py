"""Wire and file formats as pure code: text or bytes in, plain data out, and back.

Nothing here does I/O or imports a component, so every component may use it (captions and the
replay catalog both write WebVTT through :mod:`formats.webvtt`).
"""
