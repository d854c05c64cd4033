namespace IoMux.Web.Http;

/// <summary>"Hello, World!" to every GET (HEAD: the same head, no body); 405 to other methods.</summary>
internal sealed class HelloResponder : HttpResponder
{
    private static ReadOnlySpan<byte> Body => "Hello, World!"u8;

    public override void Respond(HttpConnection connection, HttpRequestHead head, ReadOnlySpan<byte> target)
    {
        if (head.Method == HttpMethodKind.Other)
        {
            connection.WriteError(405, close: false);
            return;
        }
        var writer = connection.BeginResponse();
        writer.Head(200, Body.Length, head.KeepAlive, connection.Date);
        writer.Header("Content-Type"u8, "text/plain"u8);
        writer.End(head.Method == HttpMethodKind.Get ? Body : default);
        connection.Commit(writer);
    }
}

/// <summary>Files under a root: GET sends the file with sendfile, HEAD its head; 404 for what is missing or
/// outside the root, 400 for a malformed path, 405 for other methods. Opening and fstat happen on the loop thread
/// (a cold disk can stall it; <see cref="FileReadPool"/> is the off-loop path for reads).</summary>
internal sealed class StaticFileResponder(string root) : HttpResponder
{
    private readonly StaticRoot _root = new(root);

    public override void Respond(HttpConnection connection, HttpRequestHead head, ReadOnlySpan<byte> target)
    {
        if (head.Method == HttpMethodKind.Other)
        {
            connection.WriteError(405, close: false);
            return;
        }
        int status = _root.Open(target, out int fd, out long length, out byte[] contentType);
        if (status != 0)
        {
            connection.WriteError(status, close: status == 400);
            return;
        }
        var writer = connection.BeginResponse();
        writer.Head(200, length, head.KeepAlive, connection.Date);
        writer.Header("Content-Type"u8, contentType);
        writer.End(default);
        connection.Commit(writer);
        if (head.Method == HttpMethodKind.Get && length > 0)
            connection.AttachFile(fd, length);
        else
            Interop.LibC.CloseQuietly(fd);
    }

    public override void Dispose() => _root.Dispose();
}
