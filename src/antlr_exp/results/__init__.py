"""What a run leaves behind and what is made from it: the file names of a run folder (``layout``),
the table over trials (``report``, ``antlr-report``; imports no torch) and the plots (``plots``,
``antlr-plot`` and the figures)."""
