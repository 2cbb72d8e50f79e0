"""Look inside an exported model with netron, embedded in the notebook.

    view = show_in_netron("build/artefacts/model.onnx")   # serves on 127.0.0.1, free port; shows an IFrame
    view.stop()                                             # or stop_all(); the kernel's exit stops it too

netron (9.x) serves from a daemon thread of this process, so the server cannot outlive the kernel; an
``atexit`` hook also stops it cleanly. Two things to know (measured, see shared/notes/stack.md):

* netron keeps the served model in a class attribute, so one process serves one model at a time:
  ``show_in_netron`` stops the previous view before it starts the next (an old IFrame would otherwise
  silently show the new model when reloaded).
* Offline, the page first asks for cookie consent (click "Accept" once), and a netron build older than 180
  days shows only "Please update to the newest version": ``show_in_netron`` warns when that is the case
  (then upgrade the ``netron`` pin; the browser tests strip the date instead).
"""
import atexit
import datetime
import logging
import re
import time
import warnings
from pathlib import Path

import netron
from IPython.display import IFrame

from gfpgan_debug.errors import ArtifactError

HOST = "127.0.0.1"  # never all interfaces: the model file would be readable from the network
MAX_AGE_DAYS = 180  # netron's page refuses to show a model when its build is older than this
_views = []


def build_age_days(index_html: str = None, today: datetime.date = None) -> float:
    """Days since netron's build date, read from the <meta name="date"> of its index.html."""
    if index_html is None:
        index_html = (Path(netron.__file__).parent / "index.html").read_text(encoding="utf-8")
    found = re.search(r'<meta name="date" content="(\d{4}-\d{2}-\d{2})', index_html)
    if found is None:
        return 0.0  # no date: this netron does not check its age
    built = datetime.date.fromisoformat(found.group(1))
    return float(((today or datetime.date.today()) - built).days)


class NetronView:
    """One netron server for one file; shows itself as an IFrame in a notebook."""

    def __init__(self, path: Path, address, height: int):
        self.path = path
        self.address = address
        self.height = height

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}/"

    @property
    def running(self) -> bool:
        return netron.status(self.address)

    def stop(self):
        """Stop the server (the IFrame stays, but shows nothing new). Stopping twice is harmless."""
        if netron.status(self.address):
            netron.stop(self.address)
        # netron's thread notices the stop within its 0.25 s poll; wait for it, so `running` is then False
        deadline = time.monotonic() + 5
        while netron.status(self.address) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self in _views:
            _views.remove(self)

    def iframe(self) -> IFrame:
        return IFrame(self.url, width="100%", height=self.height)

    def _repr_html_(self) -> str:
        return self.iframe()._repr_html_()

    def __repr__(self) -> str:
        state = "serving" if self.running else "stopped"
        return f"NetronView({str(self.path)!r}, {state} at {self.url})"


def show_in_netron(path, height: int = 700) -> NetronView:
    """Serve a model file (ONNX, TorchScript, ...) with netron on 127.0.0.1 on a free port; return a view
    that a notebook displays as an IFrame. Any earlier view is stopped first (one model per process)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file to show in netron")
    age = build_age_days()
    if age > MAX_AGE_DAYS:
        warnings.warn(f"netron {netron.__version__} was built {age:.0f} days ago (more than {MAX_AGE_DAYS}): its page "
                      "will only say 'Please update to the newest version'. Upgrade the netron pin.", stacklevel=2)
    stop_all()
    # netron calls logging.basicConfig() when the root logger has no handler, which would switch a whole
    # kernel to INFO logging; a handler present for the duration of the call prevents that.
    guard = logging.NullHandler()
    logging.getLogger().addHandler(guard)
    try:
        address = netron.start(str(path), address=(HOST, 0), browse=False)
    finally:
        logging.getLogger().removeHandler(guard)
    view = NetronView(path, address, height)
    _views.append(view)
    return view


def stop_all():
    """Stop every server started by show_in_netron."""
    for view in list(_views):
        view.stop()


atexit.register(stop_all)
