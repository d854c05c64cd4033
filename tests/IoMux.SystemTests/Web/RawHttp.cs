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

    /// <summary>The longest any exchange of these tests may take, whatever the server does: a server that keeps
    /// the connection open past it fails the test (it used to be the tests' keep-alive timers that closed it).</summary>
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    /// <summary>Everything the server sends until it closes; fails the test when the close has not come within
    /// <see cref="Deadline"/>.</summary>
    public static byte[] ReadToEnd(Socket socket) => ReadUntilClose(socket, Deadline).Bytes;

    /// <summary>What the server sends until it closes, and how long after the last byte the close (EOF, or a reset)
    /// came. Fails the test when it has not closed within <paramref name="deadline"/>.</summary>
    public static (byte[] Bytes, TimeSpan CloseAfterLastByte, bool Reset) ReadUntilClose(Socket socket, TimeSpan deadline,
        int pauseEveryBytes = 0, TimeSpan pause = default)
    {
        using var output = new MemoryStream();
        var buffer = new byte[64 * 1024];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var lastByte = TimeSpan.Zero;
        long sincePause = 0;
        while (true) // bounded by the deadline
        {
            var left = deadline - clock.Elapsed;
            if (left <= TimeSpan.Zero || !socket.Poll(left, SelectMode.SelectRead))
            {
                Assert.Fail($"the server did not close the connection within {deadline.TotalSeconds:F1} s " +
                    $"({output.Length} bytes received, the last {(clock.Elapsed - lastByte).TotalSeconds:F1} s ago)");
            }
            int n;
            try
            {
                n = socket.Receive(buffer, Math.Min(buffer.Length, pauseEveryBytes > 0 ? pauseEveryBytes : buffer.Length), SocketFlags.None);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                return (output.ToArray(), clock.Elapsed - lastByte, true);
            }
            if (n == 0)
                return (output.ToArray(), clock.Elapsed - lastByte, false);
            output.Write(buffer, 0, n);
            lastByte = clock.Elapsed;
            sincePause += n;
            if (pauseEveryBytes > 0 && sincePause >= pauseEveryBytes)
            {
                sincePause = 0;
                Thread.Sleep(pause); // a slow reader: the server's socket fills and it must wait for room
            }
        }
    }

    /// <summary>Sends <paramref name="request"/> on a new connection and splits the answer (read until the server
    /// closes, within <see cref="Deadline"/>: send "Connection: close") into status, head (without the blank line)
    /// and the bytes after it.</summary>
    public static (int Status, string Headers, byte[] Body) Exchange(IPEndPoint endpoint, string request)
    {
        using var socket = Connect(endpoint);
        socket.Send(Encoding.ASCII.GetBytes(request));
        return Split(ReadToEnd(socket));
    }

    /// <summary>A response's status, head (without the blank line) and the bytes after the head.</summary>
    public static (int Status, string Headers, byte[] Body) Split(byte[] response)
    {
        int split = response.AsSpan().IndexOf("\r\n\r\n"u8);
        Assert.That(split, Is.GreaterThan(0), $"no response head: {Encoding.ASCII.GetString(response)}");
        var headers = Encoding.ASCII.GetString(response, 0, split);
        return (int.Parse(headers.AsSpan(9, 3)), headers, response[(split + 4)..]);
    }

    /// <summary>How many responses <paramref name="stream"/> holds: status lines at the start of a message, the
    /// bodies skipped by their Content-Length (these tests' responses all carry one).</summary>
    public static List<(int Status, string Headers)> Responses(byte[] stream)
    {
        var responses = new List<(int, string)>();
        int at = 0;
        while (at < stream.Length) // bounded: each pass consumes a head and its body, or fails
        {
            int split = stream.AsSpan(at).IndexOf("\r\n\r\n"u8);
            Assert.That(split, Is.GreaterThan(0), $"no response head at {at}");
            var headers = Encoding.ASCII.GetString(stream, at, split);
            Assert.That(headers, Does.StartWith("HTTP/1."), $"not a status line at {at}");
            responses.Add((int.Parse(headers.AsSpan(9, 3)), headers));
            at += split + 4 + int.Parse(Header(headers, "Content-Length") ?? "0");
        }
        return responses;
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
