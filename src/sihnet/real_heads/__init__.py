"""Real healthy heads with SIH added: the measuring stick of the reader and the network on real
anatomy (``sihnet synth --heads``; docs/synthetic.md). After the reader, which reads each head."""
