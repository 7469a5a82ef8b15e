"""The pipeline's logic, shared by the Lambda handlers in aws/lambda/ and the local runtime."""
