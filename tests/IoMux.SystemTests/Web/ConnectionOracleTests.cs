using System.Net;
using System.Net.Sockets;
using System.Text;
using IoMux.Tests.Proxy;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>nginx as the oracle for connection semantics, not only status lines: the same client script runs
/// against IoMux's static server and nginx over one directory, both with the same timeouts (header 1 s, keep-alive
/// 1 s, send 2 s), and the test compares what the client observes — the statuses of every response on the
/// connection (so how many a pipelined batch gets), each Location resolved against the request URL, the bytes, and
/// how the connection ends: at once after the last byte, after a timeout, or not at all. Differences from nginx
/// are rows with a reason (RFC section); every other row must match. The table is printed.</summary>
[Category("System")]
[NonParallelizable]
public sealed class ConnectionOracleTests
{
    private const int BigLength = 8 << 20;

    /// <summary>A client script: what to send (each part after its delay), and whether to read slowly.</summary>
    private sealed record Row(string Name, (int DelayMs, string Text)[] Parts, bool SlowReader = false, string Why = "");

    /// <summary>What the client saw.</summary>
    private sealed record Observation(string Statuses, string Locations, long Bytes, string End)
    {
        public override string ToString() => $"{Statuses} {Locations} {Bytes} B, {End}";
    }

    private static IEnumerable<Row> Rows()
    {
        const string Close = "Host: t\r\nConnection: close\r\n\r\n";
        yield return new("a large response closed by the request, to a slow reader", [(0, "GET /big.bin HTTP/1.1\r\n" + Close)], SlowReader: true);
        yield return new("a large HTTP/1.0 response, to a slow reader", [(0, "GET /big.bin HTTP/1.0\r\n\r\n")], SlowReader: true);
        yield return new("HTTP/1.0", [(0, "GET /a.txt HTTP/1.0\r\n\r\n")]);
        yield return new("a request pipelined after Connection: close", [(0, "GET /a.txt HTTP/1.1\r\n" + Close + "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")]);
        yield return new("a 404 to Connection: close, a request pipelined after it", [(0, "GET /missing HTTP/1.1\r\n" + Close + "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")]);
        yield return new("a pipelined batch of three, the last closing", [(0, "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /missing HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\n" + Close)]);
        yield return new("a target starting //", [(0, "GET //evil.example/..%2fsub HTTP/1.1\r\n" + Close)]);
        yield return new("a target starting /\\", [(0, "GET /\\evil.example/../sub HTTP/1.1\r\n" + Close)]);
        yield return new("a directory without its slash", [(0, "GET /sub?x=1 HTTP/1.1\r\n" + Close)]);
        yield return new("a head split across reads, kept alive", [(0, "GET /a.txt HTTP/1.1\r\nHo"), (300, "st: t\r\n\r\n")]);
        yield return new("a head trickled a byte at a time, kept alive", "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".Select((c, i) => (i == 0 ? 0 : 10, c.ToString())).ToArray());
        yield return new("a reader slower than the keep-alive timeout, kept alive", [(0, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")], SlowReader: true);
        yield return new("idle before the first byte", []);
    }

    [Test]
    public void ConnectionSemanticsMatchNginx()
    {
        var nginxBinary = NginxServer.TryInstall(out string whyNot);
        if (nginxBinary is null)
            Assert.Ignore(whyNot);
        var root = Directory.CreateTempSubdirectory("iomux-connection-oracle-").FullName;
        var big = new byte[BigLength];
        new Random(5).NextBytes(big);
        File.WriteAllBytes(Path.Combine(root, "big.bin"), big);
        File.WriteAllText(Path.Combine(root, "a.txt"), "alpha");
        Directory.CreateDirectory(Path.Combine(root, "sub"));
        File.WriteAllText(Path.Combine(root, "sub", "index.html"), "<p>sub</p>");
        foreach (var path in new[] { root, Path.Combine(root, "sub") })
            File.SetUnixFileMode(path, (UnixFileMode)0b111_101_101);
        using var nginx = NginxServer.TryStart(nginxBinary, root, out whyNot,
            "client_header_timeout 1s; keepalive_timeout 1s; send_timeout 2s;");
        using var ioMux = HttpServer.StaticFiles(new IPEndPoint(IPAddress.Loopback, 0), root, new HttpServerOptions
        {
            ThreadCount = 1,
            HeaderTimeout = TimeSpan.FromSeconds(1),
            KeepAliveTimeout = TimeSpan.FromSeconds(1),
            SendTimeout = TimeSpan.FromSeconds(2),
        });
        try
        {
            if (nginx is null)
                Assert.Fail(whyNot);
            var failures = new List<string>();
            var table = new StringBuilder("| client script | IoMux | nginx | why they differ |\n|---|---|---|---|\n");
            foreach (var row in Rows())
            {
                var mine = Observe(ioMux.Endpoint.Port, row);
                var theirs = Observe(nginx!.Port, row);
                table.AppendLine($"| {row.Name} | {mine} | {theirs} | {row.Why} |");
                if (row.Why == "" && mine != theirs)
                    failures.Add($"{row.Name}: IoMux {mine}; nginx {theirs}");
                if (mine.Locations.Contains("elsewhere", StringComparison.Ordinal))
                    failures.Add($"{row.Name}: IoMux redirects off this server ({mine.Locations})");
            }
            TestContext.Out.WriteLine(table.ToString());
            Assert.That(failures, Is.Empty);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Runs <paramref name="row"/>'s script against a server on <paramref name="port"/>.</summary>
    private static Observation Observe(int port, Row row)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveBufferSize = 32 * 1024 };
        socket.Connect(new IPEndPoint(IPAddress.Loopback, port));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (var (delay, text) in row.Parts)
        {
            if (delay > 0)
                Thread.Sleep(delay);
            socket.Send(Encoding.ASCII.GetBytes(text));
        }
        // The slow reader takes 256 KiB every 100 ms: 8 MiB in about 3.2 s, past every timeout of both servers, but
        // never 2 s (the send timeout) without taking bytes.
        var (bytes, closeAfterLastByte, reset) = RawHttp.ReadUntilClose(socket, TimeSpan.FromSeconds(10),
            row.SlowReader ? 256 * 1024 : 0, TimeSpan.FromMilliseconds(100));
        if (bytes.Length == 0)
            closeAfterLastByte = clock.Elapsed; // nothing came: the close is timed from the connect
        string end = (reset ? "reset " : "closed ") + (closeAfterLastByte < TimeSpan.FromMilliseconds(500) ? "at once"
            : closeAfterLastByte < TimeSpan.FromSeconds(3) ? "after a timeout" : "late");
        var statuses = new List<int>();
        var locations = new List<string>();
        long content = 0;
        int at = 0;
        while (at < bytes.Length) // bounded: each pass consumes a response or stops
        {
            int split = bytes.AsSpan(at).IndexOf("\r\n\r\n"u8);
            if (split < 0)
                break;
            var head = Encoding.ASCII.GetString(bytes, at, split);
            statuses.Add(int.Parse(head.AsSpan(9, 3)));
            if (RawHttp.Header(head, "Location") is { } location)
            {
                // As a browser resolves it against the URL it asked for (Host t, this port; a backslash reads as a
                // slash in http URLs, WHATWG URL spec): nginx writes an absolute URL, IoMux a path.
                var resolved = new Uri(new Uri($"http://t:{port}/sub?x"), location.Replace('\\', '/'));
                locations.Add(resolved.Authority == $"t:{port}" ? resolved.PathAndQuery : $"elsewhere: {resolved}");
            }
            long length = long.Parse(RawHttp.Header(head, "Content-Length") ?? "0");
            long available = Math.Min(length, bytes.Length - at - split - 4);
            if (statuses[^1] is 200 or 206)
                content += available; // error and redirect bodies are each server's own text
            at += split + 4 + (int)available;
        }
        return new Observation(string.Join(",", statuses), string.Join(",", locations), content, end);
    }
}
