"""The one-line report of what did not map when a foreign file's weights are matched to our networks."""

SHOWN_PER_GROUP = 20  # names listed per kind of problem; the count says how many there are in all


def describe(groups):
    """[(title, [names])] -> '; '-joined '<title> (<count>): a, b, ...' for each non-empty group, or '' if none."""
    parts = []
    for title, items in groups:
        if items:
            more = " ..." if len(items) > SHOWN_PER_GROUP else ""
            parts.append(f"{title} ({len(items)}): " + ", ".join(items[:SHOWN_PER_GROUP]) + more)
    return "; ".join(parts)
