"""Running measurements: the measurement process (``server``) and its handle (``client``), what a process does
with its job (``process``), sides of one or several processes (``sides``), interleaving them (``schedule``),
pairing a variant with the fp32 reference (``pairing``), the executors (``local``, ``ray_executor``) and the one
sweep loop over them (``sweep``)."""
