"""The ML code: data set, step scripts, SageMaker pipeline definition, local runner and server.

The command line and the operations code (AWS settings, deploy, rollback, the model registry)
live in {{ cookiecutter.__ops_package_name }}, which imports this package; nothing here imports it.
"""
