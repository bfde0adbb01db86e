"""Progress lines of a metric's image loop (`<tag> images i/n`), printed by rank 0 to stderr."""

import sys
import time

import numpy as np


class Progress:
    """Rank 0 prints `<tag> images i/n` to stderr about every 10% when opts.progress is set (the CLI's runs)."""

    def __init__(self, opts, tag, total):
        self.enabled = bool(opts.get("progress")) and opts.rank == 0 and total > 0
        self.tag, self.total, self.done, self.next_report = tag, total, 0, 0.1
        self.start = time.time()

    def update(self, count):
        self.done += count
        if self.enabled and self.done >= self.next_report * self.total:
            self.next_report = np.floor(self.done / self.total * 10 + 1) / 10
            print(f"  {self.tag} images {self.done}/{self.total} (rank 0) {time.time() - self.start:.1f}s",
                  file=sys.stderr, flush=True)
