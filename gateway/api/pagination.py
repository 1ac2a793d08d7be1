from rest_framework import pagination
from rest_framework.exceptions import ValidationError


class PageNumberPagination(pagination.PageNumberPagination):
    """Pages of relational records (meters, import runs): ?page=N&page_size=M."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request):
        # DRF falls back to the default on a bad page_size; here it is an error, as documented.
        text = request.query_params.get(self.page_size_query_param)
        if not text:
            return self.page_size
        # Digits past the maximum's are refused before int(), which fails past 4,300 of them.
        digits = text.lstrip("0") if text.isascii() and text.isdigit() else ""
        if not digits or len(digits) > len(str(self.max_page_size)) or int(digits) > self.max_page_size:
            raise ValidationError({self.page_size_query_param: [f"must be a whole number from 1 to {self.max_page_size}"]})
        return int(digits)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
