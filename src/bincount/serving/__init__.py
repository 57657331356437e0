"""The local HTTP server: SageMaker's container contract (GET /ping, POST /invocations on port
8080) around `bincount.inference`, with an upload page at `/`."""
