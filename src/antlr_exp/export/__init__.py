"""Export a trained network to other tools: :mod:`.nir_graph` writes NIR, the Neuromorphic
Intermediate Representation (``antlr-export RUN --nir out.nir``; needs ``pip install 'antlr-exp[nir]'``)."""
