"""Files written into an exported folder: ``predict.py`` and ``serve.py`` (with the settings of the variant filled
in) and one runtime section per runtime. They import nothing from optbench: each must run with only the runtime,
numpy, Pillow and the web packages of the folder's requirements.txt."""
