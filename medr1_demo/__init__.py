"""Med-R1 clinician demo: scan ingestion, the Med-R1 protocol, the policy engine and the Gradio UI.

Import the submodules directly (`from medr1_demo import imaging`); this package file stays empty
so that importing the torch-free parts (imaging, protocol, ui) never pulls in torch.
"""
