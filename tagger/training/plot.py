"""The confusion matrix as a PNG (Pillow; its built-in font, so no font files are needed)."""

from __future__ import annotations

from pathlib import Path

from tagger.training.metrics import ABSTAIN, Report

CELL = 44
PAD = 12


def confusion_png(report: Report, path: str | Path) -> None:
    """Rows: the true genre; columns: the answer (last: abstained). Each cell shows the count
    and is shaded by the row's share, so small genres read as clearly as big ones."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    cols = [*report.classes, ABSTAIN]
    label_w = max(int(font.getlength(c)) for c in report.classes) + 2 * PAD
    head_h = max(int(small.getlength(c)) for c in cols) + 2 * PAD
    title_h = 28
    title = (f"{report.name}: accuracy {report.accuracy:.2f}, macro-F1 {report.macro_f1:.2f} "
             f"(n={report.n})")
    w = max(label_w + CELL * len(cols) + PAD, int(font.getlength(title)) + 2 * PAD)
    h = title_h + head_h + CELL * len(report.classes) + PAD + 20
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    draw.text((PAD, 6), title, fill="black", font=font)
    # Column names, rotated to fit narrow cells.
    for j, c in enumerate(cols):
        tw = int(small.getlength(c)) + 4
        tile = Image.new("RGB", (tw, 16), "white")
        ImageDraw.Draw(tile).text((2, 1), c, fill="black", font=small)
        tile = tile.rotate(90, expand=True)
        img.paste(tile, (label_w + j * CELL + CELL // 2 - 8, title_h + head_h - tile.height - 4))
    for i, (c, row) in enumerate(zip(report.classes, report.confusion)):
        y = title_h + head_h + i * CELL
        draw.text((PAD, y + CELL // 2 - 7), c, fill="black", font=font)
        total = max(sum(row), 1)
        for j, v in enumerate(row):
            share = v / total
            x = label_w + j * CELL
            good = j == i
            shade = int(255 - 200 * share)
            colour = (shade, 255 - int(90 * share), shade) if good else (255, shade, shade)
            draw.rectangle([x, y, x + CELL - 2, y + CELL - 2], fill=colour, outline=(200, 200, 200))
            text = str(v)
            draw.text((x + CELL // 2 - int(font.getlength(text)) // 2, y + CELL // 2 - 7), text,
                      fill="black", font=font)
    draw.text((PAD, h - 18), "rows: true genre, columns: answer", fill=(90, 90, 90), font=small)
    img.save(str(path), format="PNG")
