"""The `longtail` command (`cli`) and the launcher that runs the whole platform on one
machine, every service a child process (`launcher`, used by `longtail up` and the tests)."""
