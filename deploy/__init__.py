"""What deploys openai-files on Kubernetes (kubernetes/: kustomize manifests), and the check
that renders and validates them (`make deploy-check`, `python -m deploy`)."""
