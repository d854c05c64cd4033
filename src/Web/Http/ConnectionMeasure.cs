namespace IoMux.Web.Http;

/// <summary>What one <see cref="HttpConnection"/> keeps for the IoMux.Web histograms: when it and its current request
/// started (0: nobody listened then, nothing is recorded), the request's method and version, and why it failed. A
/// mutable struct held in a field of the connection: no object per connection or request.</summary>
internal struct ConnectionMeasure
{
    private long _connectionStart, _requestStart;
    private byte _method;
    private int _version, _requestVersion, _status; // the connection's last known version; the request's (0: unknown)
    private string? _requestError, _connectionError;

    /// <summary>The connection was accepted.</summary>
    public void Accepted() => _connectionStart = WebMetrics.Start(WebMetrics.ConnectionDuration);

    /// <summary>A request head (and its content) is complete, or found malformed: the request's clock starts.</summary>
    public void RequestStarted(HttpRequestHead head, ReadOnlySpan<byte> input)
    {
        _requestVersion = head.Version;
        if (head.Version != 0)
            _version = head.Version;
        _requestError = null;
        _requestStart = WebMetrics.Start(WebMetrics.RequestDuration);
        if (_requestStart != 0)
            _method = head.MethodLength > 0 ? WebMetrics.MethodIndex(input.Slice(head.MethodStart, head.MethodLength)) : WebMetrics.OtherMethod;
    }

    /// <summary>A head that never completed is answered (408): a request of unknown method.</summary>
    public void UnparsedRequestStarted()
    {
        _requestVersion = 0;
        _requestError = null;
        _requestStart = WebMetrics.Start(WebMetrics.RequestDuration);
        _method = WebMetrics.OtherMethod;
    }

    /// <summary>The response's status is decided (its head is written).</summary>
    public void Answered(int status) => _status = status;

    /// <summary>The handler threw: the request's error.type is the exception's type, as ASP.NET Core records it.</summary>
    public void HandlerFailed(Exception exception) => _requestError = exception.GetType().FullName;

    /// <summary>The connection will close for <paramref name="reason"/> (the first reason given is kept).</summary>
    public void Ending(string reason) => _connectionError ??= reason;

    /// <summary>The response's last byte is in the socket.</summary>
    public void ResponseDone()
    {
        WebMetrics.RequestDone(_requestStart, _method, _requestVersion, _status, _requestError);
        _requestStart = 0;
    }

    /// <summary>The connection closed: a request still measured never saw its response's last byte (every answer
    /// that completes goes through <see cref="ResponseDone"/>), so it is recorded as incomplete; then the connection.</summary>
    public void Closed(WebMetrics.EndpointTags endpoint)
    {
        if (_requestStart != 0)
        {
            WebMetrics.RequestDone(_requestStart, _method, _requestVersion, _status, _requestError ?? ConnectionEndReasons.ResponseIncomplete);
            _requestStart = 0;
        }
        WebMetrics.ConnectionDone(_connectionStart, endpoint, _version, _connectionError);
    }
}
