"""The files of a comparison run (metrics/comparison.py): results.json, the method x protocol table as results.md
and results.csv, the hole-ratio plot holes.png and the picture sheet sheet.png."""

import csv
import json
import math
import os
import uuid

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

from inference.pictures import show_hole

# Columns of one protocol group, per metric kind: (field suffix or None for the bare name, header, format, better,
# scale). P-IDS/U-IDS are shown in percent, as papers report them.
KIND_COLUMNS = {
    "fid": [(None, "FID", "{:.2f}", "lower", 1.0)],
    "ids": [("pids", "P-IDS %", "{:.2f}", "higher", 100.0), ("uids", "U-IDS %", "{:.2f}", "higher", 100.0)],
    "pix": [("l1_hole", "L1 hole", "{:.4f}", "lower", 1.0), ("l1", "L1", "{:.4f}", "lower", 1.0),
            ("psnr", "PSNR", "{:.2f}", "higher", 1.0), ("ssim", "SSIM", "{:.4f}", "higher", 1.0)],
}
STORED_NOTE = ("completions read from files (--results) and composited with the known pixels before scoring, as "
               "every method's output is")
HOLE_PLOT_FIELDS = (("l1_hole", "L1 in the hole", "lower"), ("l1", "L1 whole image", "lower"),
                    ("psnr", "PSNR (dB)", "higher"), ("ssim", "SSIM", "higher"))
HOLE_PLOT_SIZE = (12.0, 3.4)  # inches; at HOLE_PLOT_DPI the PNG is exactly 1200 x 340 pixels
HOLE_PLOT_DPI = 100
SHEET_MIN_TILE = 128  # sheet tiles are enlarged (nearest) to at least this many pixels, so 32x32 faces are visible
SHEET_GAP = 2
SHEET_LABEL_H = 16  # height of the text bands (column names, protocol names)


# ---------------------------------------------------------------------------------------------------------------------
# The table: one row per method, a column group per protocol.

def table_columns(record):
    """[(protocol spec, value key, header, format, better, scale)] by protocol, then FID, IDS, pixel metrics. With two
    metrics of one kind (pix200 and pix2k) the header names the metric."""
    metrics = record["protocol"]["metrics"]
    per_kind = {}
    for name, info in metrics.items():
        per_kind.setdefault(info["kind"], []).append(name)
    has_fid = "fid" in per_kind
    cols = []
    ordered = sorted(metrics.items(), key=lambda item: list(KIND_COLUMNS).index(item[1]["kind"]))
    for mask in record["protocol"]["masks"]:
        for name, info in ordered:
            tag = f" ({name})" if len(per_kind[info["kind"]]) > 1 else ""
            specs = list(KIND_COLUMNS[info["kind"]])
            if info["kind"] == "ids" and not has_fid:
                specs.append(("fid", "FID", "{:.2f}", "lower", 1.0))  # the FID of the same paired features
            for suffix, header, fmt, better, scale in specs:
                key = name if suffix is None else f"{name}_{suffix}"
                cols.append((mask["spec"], key, header + tag, fmt, better, scale))
    return cols


def _value(record, method_key, spec, key):
    value = record["results"].get(method_key, {}).get(spec, {}).get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def table(record):
    """EasyDict-like dict: columns (table_columns), rows [(label, [value or None])], best [set of row indices]."""
    cols = table_columns(record)
    rows = [(m["label"], [_value(record, m["key"], spec, key) for spec, key, *_rest in cols])
            for m in record["methods"]]
    best = []
    for c, (_spec, _key, _h, _fmt, better, _scale) in enumerate(cols):
        vals = [(r, row[1][c]) for r, row in enumerate(rows) if row[1][c] is not None]
        if not vals:
            best.append(set())
            continue
        target = (min if better == "lower" else max)(v for _r, v in vals)
        best.append({r for r, v in vals if v == target})
    return dict(columns=cols, rows=rows, best=best)


def table_notes(record):
    """The lines said with the table: what the columns are, and why FID/IDS columns are missing if they are."""
    proto = record["protocol"]
    counts = ", ".join(f"{name} = {info['num_items']} items" for name, info in proto["metrics"].items())
    masks = ", ".join(f"{m['spec']} (mean hole {m['mean_hole_ratio']:.0%})" if m["mean_hole_ratio"] is not None
                      else m["spec"] for m in proto["masks"])
    notes = [f"Validation set {os.path.basename(proto['data'])}: {proto['num_images']} images at "
             f"{proto['resolution']}x{proto['resolution']}, seed {proto['seed']}; {counts}.",
             f"Protocols: {masks}. Every method sees the same images, masks and latents.",
             "↓ lower is better, ↑ higher is better; **bold**: best in its column."]
    stored = stored_labels(record)
    if stored:
        notes.append(f"{', '.join(stored)}: {STORED_NOTE}.")
    detector = proto["detector"]
    if detector.get("note"):
        notes.insert(0, f"**{detector['note']}.**")
    return notes


def stored_labels(record):
    """Labels of the rows scored from stored completions (--results)."""
    return [m["label"] for m in record["methods"] if m.get("kind") == "results"]


def format_value(value, fmt, scale):
    return "n/a" if value is None else fmt.format(value * scale)


def markdown_table(record):
    """The table as GitHub markdown lines (header, rule, one line per method)."""
    tab = table(record)
    heads = [f"{spec} · {h} {'↓' if b == 'lower' else '↑'}" for spec, _k, h, _f, b, _s in tab["columns"]]
    lines = ["| method | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for r, (label, values) in enumerate(tab["rows"]):
        cells = []
        for c, value in enumerate(values):
            _spec, _key, _h, fmt, _b, scale = tab["columns"][c]
            text = format_value(value, fmt, scale)
            cells.append(f"**{text}**" if r in tab["best"][c] else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_markdown(path, record, title="Inpainting comparison", with_sheet=True):
    proto = record["protocol"]
    lines = [f"# {title}", "", *table_notes(record), "", *markdown_table(record), "",
             "![pixel metrics by hole ratio](holes.png)", ""]
    lines += ["![validation images by protocol](sheet.png)", ""] if with_sheet else []
    lines += [
             f"Code {proto['code_version']}, torch {proto['torch']}; detector "
             f"{proto['detector'].get('id') or 'none'} (sha256 {proto['detector'].get('sha256') or '-'}).", ""]
    _write_text(path, "\n".join(lines))


def write_csv(path, record):
    """One row per method (columns `<protocol>/<value key>`, raw values: IDS as fractions), then a row `best`
    naming the best method of each column."""
    tab = table(record)
    header = ["method"] + [f"{spec}/{key}" for spec, key, *_rest in tab["columns"]]
    out = [header]
    for label, values in tab["rows"]:
        out.append([label] + ["" if v is None else repr(v) for v in values])
    labels = [label for label, _v in tab["rows"]]
    out.append(["best"] + [";".join(labels[r] for r in sorted(best)) for best in tab["best"]])
    if stored_labels(record):
        out.append([f"# {', '.join(stored_labels(record))}: {STORED_NOTE}"])
    tmp = _tmp_name(path)
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(out)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------------
# holes.png: each pixel metric against the hole-ratio bucket, one line per method.

def write_hole_plot(path, record):
    """Pixel metrics per hole-ratio bucket (all protocols' items pooled), one line per method; 1200x340 pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from data.masks import HOLE_BUCKETS

    scheme = record["hole_buckets"]["scheme"]
    labels = [f"{round(lo * 100)}-{round(hi * 100)}%" for lo, hi in HOLE_BUCKETS[scheme]]
    fig = Figure(figsize=HOLE_PLOT_SIZE, dpi=HOLE_PLOT_DPI)  # no pyplot: no global state, any backend
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(HOLE_PLOT_FIELDS))
    values = record["hole_buckets"]["values"]
    for ax, (field, title, better) in zip(axes, HOLE_PLOT_FIELDS):
        for method in record["methods"]:
            buckets = values.get(method["key"], {})
            ys = [buckets.get(lab, {}).get(field, np.nan) for lab in labels]
            ax.plot(range(len(labels)), ys, marker="o", label=method["label"])
        ax.set_title(f"{title} {'↓' if better == 'lower' else '↑'}", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    fig.supxlabel(f"hole ratio ({scheme} buckets; the items of every protocol pooled)", fontsize=8)
    axes[-1].legend(fontsize=7, loc="best")
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.25, top=0.9, wspace=0.3)
    tmp = _tmp_name(path)
    fig.savefig(tmp, format="png", dpi=HOLE_PLOT_DPI)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------------
# sheet.png: K validation images per protocol; columns: input with its hole, each method, original.

def sheet_geometry(num_protocols, num_images, num_methods, resolution):
    """(tile side, width, height) of sheet.png."""
    tile = resolution * max(1, SHEET_MIN_TILE // resolution)
    cols = num_methods + 2
    width = cols * tile + (cols - 1) * SHEET_GAP
    group = SHEET_LABEL_H + num_images * tile + (num_images - 1) * SHEET_GAP
    return tile, width, SHEET_LABEL_H + num_protocols * group


def _fit_text(draw, font, text, width):
    while text and draw.textlength(text, font=font) > width - 4:
        text = text[:-1]
    return text


def make_sheet(record):
    """The sheet as uint8 [H, W, 3], or None when no image was kept (--sheet 0)."""
    sheets = record["_sheets"]
    protocols = [m["spec"] for m in record["protocol"]["masks"]]
    methods = record["methods"]
    count = min((len(sheets[p]["inputs"]) for p in protocols), default=0)
    if count == 0:
        return None
    res = record["protocol"]["resolution"]
    tile, width, height = sheet_geometry(len(protocols), count, len(methods), res)
    scale = tile // res
    canvas = PIL.Image.new("RGB", (width, height), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(canvas)
    font = PIL.ImageFont.load_default()
    names = ["input"] + [m["label"] for m in methods] + ["original"]
    for c, name in enumerate(names):
        draw.text((c * (tile + SHEET_GAP) + 2, 2), _fit_text(draw, font, name, tile), fill=(0, 0, 0), font=font)
    y = SHEET_LABEL_H
    for spec in protocols:
        draw.text((2, y + 2), f"protocol: {spec}", fill=(0, 0, 0), font=font)
        y += SHEET_LABEL_H
        for i in range(count):
            real, mask = sheets[spec]["inputs"][i]
            tiles = [show_hole(real, mask)] + [sheets[spec]["fakes"][m["key"]][i] for m in methods] + [real]
            for c, img in enumerate(tiles):
                big = np.repeat(np.repeat(np.asarray(img, np.uint8), scale, axis=0), scale, axis=1)
                canvas.paste(PIL.Image.fromarray(big), (c * (tile + SHEET_GAP), y))
            y += tile + SHEET_GAP
        y -= SHEET_GAP
    return np.asarray(canvas)


# ---------------------------------------------------------------------------------------------------------------------
# All files.

def _tmp_name(path):
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex}")


def _write_text(path, text):
    """Atomic: temp file in the same folder, rename."""
    tmp = _tmp_name(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def json_record(record):
    """The record without the pictures (the JSON content of results.json)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def write_results(outdir, record, title="Inpainting comparison"):
    """Write results.json, results.md, results.csv, holes.png and sheet.png (if pictures were kept) into `outdir`;
    returns {file name: path}."""
    os.makedirs(outdir, exist_ok=True)
    paths = {name: os.path.join(outdir, name) for name in ("results.json", "results.md", "results.csv", "holes.png")}
    _write_text(paths["results.json"], json.dumps(json_record(record), indent=2, allow_nan=True) + "\n")
    sheet = make_sheet(record)
    write_markdown(paths["results.md"], record, title, with_sheet=sheet is not None)
    write_csv(paths["results.csv"], record)
    write_hole_plot(paths["holes.png"], record)
    if sheet is not None:
        paths["sheet.png"] = os.path.join(outdir, "sheet.png")
        tmp = _tmp_name(paths["sheet.png"])
        PIL.Image.fromarray(sheet).save(tmp, format="png")
        os.replace(tmp, paths["sheet.png"])
    return paths
