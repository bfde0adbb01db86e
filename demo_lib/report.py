"""The demo's report: the comparison sheets (input, OpenCV baselines, our seeds, original) and report.md / report.html
with the metrics table and the pictures."""

import html
import os

import numpy as np

from inference.pictures import make_grid, save_png, show_hole

METRIC_COLUMNS = (  # (key in the pix results, header, format, better)
    ("l1_hole", "L1 in hole", "{:.4f}", "lower"),
    ("l1", "L1 whole", "{:.4f}", "lower"),
    ("psnr", "PSNR (dB)", "{:.2f}", "higher"),
    ("ssim", "SSIM", "{:.4f}", "higher"),
)
DISPLAY_SCALE = 4  # the demo works at 32x32; sheets are enlarged (nearest) so the pixels can be seen


def upscale_nearest(img, factor=DISPLAY_SCALE):
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def comparison_sheet(rows):
    """rows: list of dict(image, mask, telea, ns, ours=[...], ) of equal-size uint8 HWC images -> one sheet,
    one face per row: input with hole | Telea | NS | ours (each seed) | original."""
    tiles = []
    for row in rows:
        tiles += [show_hole(row["image"], row["mask"]), row["telea"], row["ns"], *row["ours"], row["image"]]
    cols = 4 + len(rows[0]["ours"])
    return make_grid([upscale_nearest(t) for t in tiles], cols=cols, gap=DISPLAY_SCALE, background=255)


def sheet_header(num_seeds, seeds):
    return ["input", "Telea", "NS"] + [f"ours, seed {s}" for s in seeds[:num_seeds]] + ["original"]


def _fmt(value, fmt):
    return "n/a" if value is None or value != value else fmt.format(value)


def table_rows(results):
    """results: {(method, mask_spec): pix result dict} -> list of (method, mask, [formatted values], num)."""
    rows = []
    for (method, spec), res in results.items():
        rows.append((method, spec, [_fmt(res.get(k), f) for k, _h, f, _b in METRIC_COLUMNS], res.get("num")))
    return rows


def write_markdown(path, info, results, sheets):
    heads = [h + (" ↓" if b == "lower" else " ↑") for _k, h, _f, b in METRIC_COLUMNS]
    lines = [f"# {info['title']}", "", *info["summary_lines"], "",
             "## Pixel metrics on the held-out faces", "",
             "| method | mask | " + " | ".join(heads) + " | items |",
             "|---|---|" + "---|" * len(heads) + "---|"]
    for method, spec, values, num in table_rows(results):
        lines.append(f"| {method} | {spec} | " + " | ".join(values) + f" | {num} |")
    lines += ["", info["table_note"], ""]
    for title, rel_path, caption in sheets:
        lines += [f"## {title}", "", caption, "", f"![{title}]({rel_path})", ""]
    lines += ["## Files", ""] + [f"- `{name}`: {what}" for name, what in info["files"]] + [""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def write_html(path, info, results, sheets):
    esc = html.escape
    heads = "".join(f"<th>{esc(h)} {'&darr;' if b == 'lower' else '&uarr;'}</th>" for _k, h, _f, b in METRIC_COLUMNS)
    body = "".join(
        f"<tr><td>{esc(m)}</td><td>{esc(s)}</td>" + "".join(f"<td>{esc(v)}</td>" for v in vals) + f"<td>{num}</td></tr>"
        for m, s, vals, num in table_rows(results))
    parts = [f"<h1>{esc(info['title'])}</h1>"] + [f"<p>{esc(line)}</p>" for line in info["summary_lines"]]
    parts += ["<h2>Pixel metrics on the held-out faces</h2>",
              f"<table><tr><th>method</th><th>mask</th>{heads}<th>items</th></tr>{body}</table>",
              f"<p>{esc(info['table_note'])}</p>"]
    for title, rel_path, caption in sheets:
        parts += [f"<h2>{esc(title)}</h2>", f"<p>{esc(caption)}</p>", f'<img src="{esc(rel_path)}" alt="{esc(title)}">']
    files = "".join(f'<li><a href="{esc(name)}"><code>{esc(name)}</code></a>: {esc(what)}</li>'
                    for name, what in info["files"])
    parts += ["<h2>Files</h2>", f"<ul>{files}</ul>"]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:4px 8px;text-align:right}"
             "img{image-rendering:pixelated;max-width:100%}")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(info['title'])}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)


def write_report(outdir, info, results, sheets):
    """Write outdir/report.md and outdir/report.html. sheets: [(title, path relative to outdir, caption)]."""
    write_markdown(os.path.join(outdir, "report.md"), info, results, sheets)
    write_html(os.path.join(outdir, "report.html"), info, results, sheets)
    return os.path.join(outdir, "report.md"), os.path.join(outdir, "report.html")


def save_sheet(sheet, path):
    save_png(sheet, path)
    return path
