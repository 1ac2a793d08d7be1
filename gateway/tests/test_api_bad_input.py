"""Whatever a client sends, the answer is a 2xx or a 4xx problem document, never a 5xx."""
import pytest

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.mark.parametrize("page", ["110357550567", str(2**31), str(2**63)])
def test_a_page_far_past_the_end_is_not_found(api, page):
    response = api.get("/api/v1/meters/", {"page": page})

    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM
    assert response.json()["detail"] == "Invalid page."


def test_the_last_page_that_fits_is_asked_of_the_service(api):
    response = api.get("/api/v1/meters/", {"page": 2**31 // 100, "page_size": 100})

    assert response.status_code == 404  # the service's list ends long before
    assert response.json()["detail"] == "Invalid page."
