"""{{ cookiecutter.project_slug }}: the SageMaker training pipeline, its CLI and local tools."""
