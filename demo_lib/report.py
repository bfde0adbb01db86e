"""The demo's report: the per-seed comparison sheets (input, baselines, our seeds, original) and report.md /
report.html around the comparison run's table (metrics/report_files.py)."""

import html
import os

import numpy as np

from inference.pictures import make_grid, save_png, show_hole
from metrics import report_files

DISPLAY_SCALE = 4  # the demo works at 32x32; sheets are enlarged (nearest) so the pixels can be seen


def upscale_nearest(img, factor=DISPLAY_SCALE):
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def comparison_sheet(rows):
    """rows: list of dict(image, mask, baselines=[...], ours=[...]) of equal-size uint8 HWC images -> one sheet,
    one face per row: input with hole | each baseline | ours (each seed) | original."""
    tiles = []
    for row in rows:
        tiles += [show_hole(row["image"], row["mask"]), *row["baselines"], *row["ours"], row["image"]]
    cols = 2 + len(rows[0]["baselines"]) + len(rows[0]["ours"])
    return make_grid([upscale_nearest(t) for t in tiles], cols=cols, gap=DISPLAY_SCALE, background=255)


def sheet_header(baseline_labels, seeds):
    return ["input", *baseline_labels] + [f"ours, seed {s}" for s in seeds] + ["original"]


def write_markdown(path, info, record, sheets):
    lines = [f"# {info['title']}", "", *info["summary_lines"], "",
             "## GAN vs traditional inpainting on the held-out faces", "",
             *report_files.table_notes(record), "", *report_files.markdown_table(record), "",
             info["table_note"], ""]
    for title, rel_path, caption in sheets:
        lines += [f"## {title}", "", caption, "", f"![{title}]({rel_path})", ""]
    lines += ["## Files", ""] + [f"- `{name}`: {what}" for name, what in info["files"]] + [""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def _html_table(record):
    esc = html.escape
    tab = report_files.table(record)
    groups = {}
    for spec, *_rest in tab["columns"]:
        groups[spec] = groups.get(spec, 0) + 1
    top = "<th rowspan='2'>method</th>" + "".join(f"<th colspan='{n}'>{esc(spec)}</th>" for spec, n in groups.items())
    heads = "".join(f"<th>{esc(h)} {'&darr;' if b == 'lower' else '&uarr;'}</th>"
                    for _s, _k, h, _f, b, _sc in tab["columns"])
    body = []
    for r, (label, values) in enumerate(tab["rows"]):
        cells = []
        for c, value in enumerate(values):
            _spec, _key, _h, fmt, _b, scale = tab["columns"][c]
            text = esc(report_files.format_value(value, fmt, scale))
            cells.append(f"<td><b>{text}</b></td>" if r in tab["best"][c] else f"<td>{text}</td>")
        body.append(f"<tr><td>{esc(label)}</td>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{top}</tr><tr>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_html(path, info, record, sheets):
    esc = html.escape
    parts = [f"<h1>{esc(info['title'])}</h1>"] + [f"<p>{esc(line)}</p>" for line in info["summary_lines"]]
    parts += ["<h2>GAN vs traditional inpainting on the held-out faces</h2>"]
    parts += [f"<p>{esc(line.replace('**', ''))}</p>" for line in report_files.table_notes(record)]
    parts += [_html_table(record), f"<p>{esc(info['table_note'])}</p>"]
    for title, rel_path, caption in sheets:
        parts += [f"<h2>{esc(title)}</h2>", f"<p>{esc(caption)}</p>", f'<img src="{esc(rel_path)}" alt="{esc(title)}">']
    files = "".join(f'<li><a href="{esc(name)}"><code>{esc(name)}</code></a>: {esc(what)}</li>'
                    for name, what in info["files"])
    parts += ["<h2>Files</h2>", f"<ul>{files}</ul>"]
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:4px 8px;text-align:right}"
             "img{image-rendering:pixelated;max-width:100%}")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(info['title'])}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)


def write_report(outdir, info, record, sheets):
    """Write outdir/report.md and outdir/report.html around the comparison `record` (the content of
    results.json). sheets: [(title, path relative to outdir, caption)]."""
    write_markdown(os.path.join(outdir, "report.md"), info, record, sheets)
    write_html(os.path.join(outdir, "report.html"), info, record, sheets)
    return os.path.join(outdir, "report.md"), os.path.join(outdir, "report.html")


def save_sheet(sheet, path):
    save_png(sheet, path)
    return path


def seed_diversity(rows):
    """How different the seeds' completions of one face are: the mean over faces of the mean pairwise L1
    (|a - b| / 255 over the hole pixels and channels) between the seeds. rows: as for comparison_sheet.
    None with fewer than two seeds (nothing to compare)."""
    per_face = []
    for row in rows:
        ours = [np.asarray(o, np.float64) for o in row["ours"]]
        hole = np.asarray(row["mask"]) == 0
        if len(ours) < 2 or not hole.any():
            continue
        pairs = [np.abs(a - b)[hole].mean() / 255.0 for i, a in enumerate(ours) for b in ours[i + 1:]]
        per_face.append(float(np.mean(pairs)))
    return float(np.mean(per_face)) if per_face else None


_NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _shifted(region, di, dj):
    """region (bool HxW) read at (i + di, j + dj) for every pixel (i, j); False beyond the image."""
    h, w = region.shape
    padded = np.pad(region, 1)
    return padded[1 + di:1 + di + h, 1 + dj:1 + dj + w]


def _edge_pairs(hole):
    """Index arrays (hole rows, hole cols, known rows, known cols), one entry per hole pixel and known 4-neighbour
    pair: the places where the fill meets the kept image."""
    pairs = []
    for di, dj in _NEIGHBOURS:
        i, j = np.nonzero(hole & _shifted(~hole, di, dj))
        pairs.append((i, j, i + di, j + dj))
    return [np.concatenate(parts) for parts in zip(*pairs)]


def _grow(region, px):
    """region (bool HxW) grown by px pixels in the 4-neighbourhood."""
    for _ in range(px):
        region = region | np.logical_or.reduce([_shifted(region, di, dj) for di, dj in _NEIGHBOURS])
    return region


def _edge_step(img, pairs):
    gray = np.asarray(img, np.float64).mean(axis=2) / 255.0
    hi, hj, ki, kj = pairs
    return float(np.abs(gray[hi, hj] - gray[ki, kj]).mean())


def _distance_from_gray(img):
    x = np.asarray(img, np.float64) / 255.0
    return np.abs(x - x.mean(axis=2, keepdims=True)).mean(axis=2)


def hole_edge_stats(rows, ring_px=2):
    """How the fills meet the kept image, in [0, 1] units, averaged over faces (and seeds):
    step / step_real: mean |gray(hole pixel) - gray(its known neighbour)| across the hole's edge, for our fills and
    for the real face (a seam is a step well above the real one); colour_edge / colour_inside: mean distance from
    gray (|channel - channel mean|) on the hole pixels within ring_px of the edge and on the rest of the hole.
    rows: as for comparison_sheet. None without a hole."""
    steps, real_steps, edge_colour, inside_colour = [], [], [], []
    for row in rows:
        hole = np.asarray(row["mask"]) == 0
        if not hole.any() or hole.all():
            continue
        pairs = _edge_pairs(hole)
        ring = hole & _grow(~hole, ring_px)
        inside = hole & ~ring
        real_steps.append(_edge_step(row["image"], pairs))
        for fill in row["ours"]:
            colour = _distance_from_gray(fill)
            steps.append(_edge_step(fill, pairs))
            edge_colour.append(float(colour[ring].mean()))
            if inside.any():
                inside_colour.append(float(colour[inside].mean()))
    if not steps:
        return None
    return dict(step=float(np.mean(steps)), step_real=float(np.mean(real_steps)),
                colour_edge=float(np.mean(edge_colour)),
                colour_inside=float(np.mean(inside_colour)) if inside_colour else None)


def verdict_lines(record):
    """One sentence per network and protocol saying, from the numbers alone, on which pixel metrics the network
    beats every baseline and on which it does not (with the best baseline's value and name)."""
    tab = report_files.table(record)
    kinds = {m["label"]: m["kind"] for m in record["methods"]}
    nets = [r for r, (label, _v) in enumerate(tab["rows"]) if kinds.get(label) == "network"]
    bases = [r for r, (label, _v) in enumerate(tab["rows"]) if kinds.get(label) != "network"]
    lines = []
    for net in nets:
        name = tab["rows"][net][0]
        for spec in [m["spec"] for m in record["protocol"]["masks"]]:
            wins, losses = [], []
            for c, (col_spec, _key, header, fmt, better, scale) in enumerate(tab["columns"]):
                ours = tab["rows"][net][1][c]
                others = [(tab["rows"][r][0], tab["rows"][r][1][c]) for r in bases if tab["rows"][r][1][c] is not None]
                if col_spec != spec or ours is None or not others:
                    continue
                best_label, best = (min if better == "lower" else max)(others, key=lambda lv: lv[1])
                shown = (f"{header} {report_files.format_value(ours, fmt, scale)} vs "
                         f"{report_files.format_value(best, fmt, scale)} ({best_label})")
                (wins if ((ours < best) if better == "lower" else (ours > best)) else losses).append(shown)
            text = f"{name}, {spec}: "
            if wins:
                text += "better than every baseline on " + "; ".join(wins)
                text += ("; behind the best baseline on " + "; ".join(losses)) if losses else ""
            else:
                text += "behind the best baseline on every column: " + "; ".join(losses)
            lines.append(text + ".")
    return lines
