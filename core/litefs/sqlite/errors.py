"""The one exception type of the SQLite file parsers."""


class SQLiteFormatError(ValueError):
    """Bytes that are not what SQLite would have written: bad magic, short input, impossible field.

    The message always names the culprit (the field, its offset, the page number or the file offset).
    Conditions that SQLite itself treats as "nothing more to read" (a torn WAL frame, a journal record
    with a bad checksum) are not errors: the readers simply stop there.
    """
