"""The command-line programs. Each module's ``run(argv)`` parses flags into configs and calls the library;
``console()`` is its console script (``pyro-vae-train``, ``pyro-vae-evaluate``, ``pyro-vae-plot``,
``pyro-vae-bdmc``), and ``scripts/*.py`` call the same ``run``."""
