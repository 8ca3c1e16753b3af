"""The access layer: the one door every read of child-level data passes through.

``policy`` loads the statutory rules, ``decision`` turns (reader, child, categories, purpose) into
a decision with its legal basis, and ``door`` applies it: it checks region scope, decides, writes
the access-log record durably and only then lets the caller render the released fields.
"""
