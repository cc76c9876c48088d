"""anxmon monitor: the streaming pipeline (``monitor.core``) and the service around it.

anxmon is not a medical device: it never diagnoses and never suggests medication.
"""

__version__ = "0.1.0"
