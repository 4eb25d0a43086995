"""Operations: the command line, AWS settings, the SageMaker pipeline service, the model
registry, deploy and rollback{% if cookiecutter.source_provider != 'codecommit' %}, the {{ cookiecutter.__git_host }} connection{% endif %}.

It imports the ML package ({{ cookiecutter.package_name }}) to build the pipeline definition and
to run its local tools; the ML package never imports it.
"""
