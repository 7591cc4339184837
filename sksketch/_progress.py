"""Progress reporting for long commands: tqdm when installed, plain lines otherwise."""

import sys
import time


class Progress:
    """A progress bar over ``total`` units of work, written to ``file`` (stderr).

    Uses ``tqdm`` when it is installed and ``plain`` is false; otherwise prints
    one line per update, at most every ``min_interval`` seconds (and always for
    the last one), so logs of non-interactive runs stay short.
    """

    def __init__(self, total, desc, *, unit="it", file=None, plain=False, disable=False,
                 min_interval=2.0):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.file = sys.stderr if file is None else file
        self.disable = disable
        self.min_interval = min_interval
        self.n = 0
        self._postfix = ""
        self._started = time.perf_counter()
        self._last_print = -float("inf")
        self._bar = None
        if not disable and not plain:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.file,
                                 dynamic_ncols=True)

    def update(self, n=1, **postfix):
        self.n += n
        if self.disable:
            return
        if postfix:
            self._postfix = ", ".join(f"{k}={v}" for k, v in postfix.items())
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(self._postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last_print < self.min_interval and self.n < self.total:
            return
        self._last_print = now
        elapsed = now - self._started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        line = (f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} "
                f"({100.0 * self.n / max(self.total, 1):.0f}%, {elapsed:.1f} s, "
                f"{rate:,.1f} {self.unit}/s)")
        if self._postfix:
            line += f" {self._postfix}"
        print(line, file=self.file, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
