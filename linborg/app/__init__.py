"""The application on top of the stages: the `linborg` command line and the demo supervisor.

Everything that starts processes, threads, sockets or logging set-up lives here (``cli``,
``serve``, ``train``, ``generate``, ``stack``, ``sink``, ``amconfig``, ``kubernetes``); the
stages below (linborg.generator, linborg.trainer, linborg.exporter, linborg.mixin) and the
core never import it.
"""
