using System.Net;
using System.Net.Sockets;
using System.Text;

namespace IoMux.Tests.Web;

/// <summary>HTTP/1.1 over a raw socket, so that tests see the exact bytes a server sends (framing included).
/// Every read is bounded by a receive timeout.</summary>
internal static class RawHttp
{
    public static Socket Connect(IPEndPoint endpoint)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 15_000 };
        socket.Connect(endpoint);
        return socket;
    }

    /// <summary>Everything the server sends until it closes.</summary>
    public static byte[] ReadToEnd(Socket socket)
    {
        using var output = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int n;
        while ((n = socket.Receive(buffer)) > 0)
            output.Write(buffer, 0, n);
        return output.ToArray();
    }

    /// <summary>Sends <paramref name="request"/> on a new connection and splits the answer (read until the server
    /// closes: send "Connection: close") into status, head (without the blank line) and the bytes after it.</summary>
    public static (int Status, string Headers, byte[] Body) Exchange(IPEndPoint endpoint, string request)
    {
        using var socket = Connect(endpoint);
        socket.Send(Encoding.ASCII.GetBytes(request));
        var response = ReadToEnd(socket);
        int split = response.AsSpan().IndexOf("\r\n\r\n"u8);
        Assert.That(split, Is.GreaterThan(0), $"no response head: {Encoding.ASCII.GetString(response)}");
        var headers = Encoding.ASCII.GetString(response, 0, split);
        return (int.Parse(headers.AsSpan(9, 3)), headers, response[(split + 4)..]);
    }

    /// <summary>The value of the first header line named <paramref name="name"/>, or null.</summary>
    public static string? Header(string headers, string name) =>
        headers.Split("\r\n").FirstOrDefault(l => l.StartsWith(name + ": ", StringComparison.OrdinalIgnoreCase))?[(name.Length + 2)..];

    /// <summary>The content of a chunked body (RFC 9112 §7.1), failing the test on a framing error or a missing
    /// last chunk.</summary>
    public static byte[] Dechunk(byte[] body)
    {
        using var content = new MemoryStream();
        int at = 0;
        while (true) // bounded: each pass consumes a chunk of the finite body, or fails
        {
            int lineEnd = body.AsSpan(at).IndexOf("\r\n"u8);
            Assert.That(lineEnd, Is.GreaterThan(0), $"no chunk-size line at {at}");
            int size = Convert.ToInt32(Encoding.ASCII.GetString(body, at, lineEnd), 16);
            at += lineEnd + 2;
            if (size == 0)
            {
                Assert.That(body.AsSpan(at).SequenceEqual("\r\n"u8), Is.True, "the last chunk ends the body");
                return content.ToArray();
            }
            content.Write(body, at, size);
            at += size;
            Assert.That(body.AsSpan(at, 2).SequenceEqual("\r\n"u8), Is.True, $"CRLF after the chunk at {at}");
            at += 2;
        }
    }
}
