"""The two pages and their servers: the drawing page (``draw``), the training page (``watch``) over
run folders read safely while they are written (``runs``, through the file cache ``filecache``),
and the hardening both servers share (``server``); their HTML, CSS and JavaScript are in ``static/``."""
