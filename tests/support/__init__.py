"""What every test package and ``bench/`` share: processes, services, the environment they run
in, readers of the control-plane rows, and the base of the fake vector adapters."""
