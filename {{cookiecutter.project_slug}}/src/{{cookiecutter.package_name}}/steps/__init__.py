"""The step scripts SageMaker runs; each is uploaded alone and imports nothing from the package."""
