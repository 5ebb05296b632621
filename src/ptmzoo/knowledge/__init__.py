"""Knowledge for ERNIE-THU: TransE entity vectors (``transe``), vector files (``vectors``) and
entity linking by name (``linking``)."""
