"""One module per API resource: the resource's calls as pure functions, then an async and a sync class of
one-line methods that run them. Adding a resource is one module here and one attribute on a client."""
