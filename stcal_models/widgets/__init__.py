"""Notebook widgets: ramp explorer, DQ viewer, image viewer and step tuner.

Every widget is a class holding the model(s) it shows and a few view settings; it
renders matplotlib figures with the Agg backend into PNG ``ipywidgets.Image`` panels,
so it works in JupyterLab, VS Code, classic Notebook, Voila and headless, with no
custom front-end code.  ``.widget`` is the ``ipywidgets.VBox`` to place in a layout;
displaying the object displays that box.  Pixels are chosen by typing in the ``y``/``x``
boxes or with ``select_pixel(y, x)``.
"""

from ._common import cutout, render_png
from .dq_viewer import DQViewer
from .image_viewer import ImageViewer
from .ramp_explorer import RampExplorer
from .step_tuner import StepTuner

__all__ = ["DQViewer", "ImageViewer", "RampExplorer", "StepTuner", "cutout", "render_png"]
