"""The pages' shared parts (in a folder of their own, so Streamlit never lists them as pages)."""
