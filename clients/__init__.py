"""The two roles, built from the ML core and a transport: ActiveClient (coordinator) and PassiveClient."""
