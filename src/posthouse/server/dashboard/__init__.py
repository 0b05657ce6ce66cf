"""The web dashboard (issue 15): server-rendered pages over the services the API uses, mounted at `/ui/`."""
