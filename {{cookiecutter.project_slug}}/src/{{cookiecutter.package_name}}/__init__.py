"""The ML code: data set, step scripts, SageMaker pipeline definition, local runner and server.

The command line and the operations code (AWS settings, deploy, rollback, the model registry)
live in the operations package beside this one, which imports this package; nothing here
imports it: {{ cookiecutter.__ops_package_name }}.
"""
