"""The Python snippets of shared/seed/checkpoints-api.txt, verbatim.

Tests replace only the base URLs and the key (``BASE``, ``KEY``), as the
issue allows, and run each in a fresh interpreter against a real server.
"""

BASE = "https://api.tensorone.ai"
KEY = "YOUR_API_KEY"

GET = """
# Get specific checkpoint details
response = requests.get(
    "https://api.tensorone.ai/v2/training/checkpoints/ckpt_best_abc123",
    headers={"Authorization": "Bearer YOUR_API_KEY"}
)

checkpoint = response.json()
print(f"Checkpoint: {checkpoint['name']}")
print(f"Created: {checkpoint['createdAt']}")
print(f"Validation Accuracy: {checkpoint['metrics']['validationAccuracy']:.3f}")
"""

CREATE_MANUAL = """
# Create manual checkpoint for running job
response = requests.post(
    "https://api.tensorone.ai/v2/training/jobs/job_train_abc123/checkpoints",
    headers={
        "Authorization": "Bearer YOUR_API_KEY",
        "Content-Type": "application/json"
    },
    json={
        "name": "Experiment Milestone",
        "description": "Checkpoint before hyperparameter adjustment"
    }
)

checkpoint = response.json()
print(f"Created checkpoint: {checkpoint['checkpointId']}")
"""

DEPLOY = """
# Deploy best checkpoint as endpoint
response = requests.post(
    "https://api.tensorone.ai/v2/endpoints",
    headers={
        "Authorization": "Bearer YOUR_API_KEY",
        "Content-Type": "application/json"
    },
    json={
        "name": "My Fine-tuned Model",
        "checkpointId": "ckpt_best_abc123",
        "gpuIds": ["rtx-4090"],
        "workerCount": 1
    }
)

endpoint = response.json()
print(f"Deployed endpoint: {endpoint['id']}")
print(f"Endpoint URL: {endpoint['url']}")
"""

DELETE = """
# Delete old or unnecessary checkpoints
response = requests.delete(
    "https://api.tensorone.ai/v2/training/checkpoints/ckpt_old_abc123",
    headers={"Authorization": "Bearer YOUR_API_KEY"}
)

if response.status_code == 204:
    print("Checkpoint deleted successfully")
"""

CLEANUP = """
# Regularly clean up old automatic checkpoints
def cleanup_old_checkpoints(job_id, keep_count=5):
    response = requests.get(
        f"https://api.tensorone.ai/v2/training/jobs/{job_id}/checkpoints",
        params={"sortBy": "createdAt", "sortOrder": "desc"}
    )
    
    checkpoints = response.json()['checkpoints']
    
    # Keep best and final checkpoints, plus N most recent
    to_delete = []
    automatic_count = 0
    
    for ckpt in checkpoints:
        if ckpt['type'] in ['best', 'final']:
            continue
        elif ckpt['type'] == 'automatic':
            automatic_count += 1
            if automatic_count > keep_count:
                to_delete.append(ckpt['checkpointId'])
    
    # Delete old checkpoints
    for ckpt_id in to_delete:
        requests.delete(
            f"https://api.tensorone.ai/v2/training/checkpoints/{ckpt_id}",
            headers={"Authorization": "Bearer YOUR_API_KEY"}
        )
"""

BACKUP = """
# Download and backup critical checkpoints
def backup_checkpoint(checkpoint_id, local_path):
    # Get checkpoint details
    response = requests.get(
        f"https://api.tensorone.ai/v2/training/checkpoints/{checkpoint_id}",
        headers={"Authorization": "Bearer YOUR_API_KEY"}
    )
    
    checkpoint = response.json()
    download_url = checkpoint['downloadUrl']
    
    # Download checkpoint file
    checkpoint_response = requests.get(download_url, stream=True)
    with open(local_path, 'wb') as f:
        for chunk in checkpoint_response.iter_content(chunk_size=8192):
            f.write(chunk)
    
    print(f"Backed up checkpoint to {local_path}")

# Backup best checkpoint
backup_checkpoint("ckpt_best_abc123", "./backups/best_model.ckpt")
"""

CURL_LIST = (
    'curl -X GET "https://api.tensorone.ai/v2/training/jobs/job_train_abc123/checkpoints"'
    ' -H "Authorization: Bearer YOUR_API_KEY" -G -d "includeMetrics=true"'
    ' -d "sortBy=validationLoss" -d "sortOrder=asc" -d "limit=10"'
)
CURL_GET = (
    'curl -X GET "https://api.tensorone.ai/v2/training/checkpoints/ckpt_best_abc123"'
    ' -H "Authorization: Bearer YOUR_API_KEY"'
)
