"""Documents to tokens.

The bundled GPT-2 BPE, document readers, the parallel encoder and the token stream.
"""
