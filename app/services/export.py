"""Statistics tables as spreadsheets: CSV (UTF-8 with a byte-order mark, so spreadsheet programs
read Chinese correctly) and XLSX (openpyxl). Both hold the same rows as the JSON: the cells, then
one row per margin (``total`` / 合计 in the other columns), then the overall total. A suppressed
count is written ``suppressed`` (隐藏 with ``lang=zh``), never as a number: it may be below the
threshold or hidden with one that is, and saying which would help work it out."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

from app.models.statistics import Count, Lang, StatisticsTable
from app.services import statistics_labels as labels

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _count(count: Count, lang: Lang) -> int | str:
    if count.suppressed or count.count is None:
        return "隐藏" if lang is Lang.zh else "suppressed"
    return count.count


def rows(table: StatisticsTable, lang: Lang) -> list[list[Any]]:
    """Heading row first; region codes stay text so leading digits are never lost."""
    names = table.dimensions
    total = labels.headings(["total"], lang)["total"]
    out: list[list[Any]] = [[*(table.headings[d] for d in names), table.headings["count"]]]
    for cell in table.cells:
        out.append([*(labels.value(cell.values[d], lang) for d in names), _count(cell, lang)])
    if len(names) > 1:
        for margin in table.margins:
            line = [labels.value(margin.value, lang) if d == margin.dimension else total for d in names]
            out.append([*line, _count(margin, lang)])
    out.append([*(total for _ in names), _count(table.total, lang)])
    return out


def to_csv(table: StatisticsTable, lang: Lang) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows(table, lang))
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def to_xlsx(table: StatisticsTable, lang: Lang) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = {"children": "儿童", "flows": "新增退出", "services": "服务"}.get(
        table.measure, table.measure
    )
    for row in rows(table, lang):
        sheet.append(row)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    note = sheet.cell(row=sheet.max_row + 2, column=1)
    note.value = (
        f"policy {table.policy_version}; {table.disclosure.method}; "
        f"threshold {table.disclosure.threshold}; rounding {table.disclosure.rounding_base}; "
        f"{table.reference_date.isoformat()}"
    )
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def filename(table: StatisticsTable, extension: str) -> str:
    return f"childlink-{table.measure}-{table.reference_date.isoformat()}.{extension}"
