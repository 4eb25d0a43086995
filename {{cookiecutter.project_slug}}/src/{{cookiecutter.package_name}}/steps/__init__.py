"""What SageMaker runs (step scripts, schema, inference module); nothing from the package."""
