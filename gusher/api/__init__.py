"""The master: the seed's HTTP API (`seed`), gusher's extensions (`ext`), who may call them (`security`)."""
