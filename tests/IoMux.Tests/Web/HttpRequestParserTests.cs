using System.Text;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>The request-head parser: what it accepts, what it rejects with which status, and a seeded fuzz run
/// (bounded; in CI) that mutates valid heads and checks the parser's promises on every input.</summary>
public sealed class HttpRequestParserTests
{
    private static (ParseStatus Status, HttpRequestHead Head) Parse(string text)
    {
        var head = new HttpRequestHead();
        return (HttpRequestParser.Parse(Encoding.ASCII.GetBytes(text), head), head);
    }

    [Test]
    public void AValidHeadIsParsed()
    {
        var (status, head) = Parse("GET /path?q=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\nNEXT");
        Assert.That(status, Is.EqualTo(ParseStatus.Complete));
        Assert.That(head.Method, Is.EqualTo(HttpMethodKind.Get));
        Assert.That(head.Version, Is.EqualTo(11));
        Assert.That(head.KeepAlive, Is.True);
        Assert.That(head.TargetStart, Is.EqualTo(4));
        Assert.That(head.TargetLength, Is.EqualTo("/path?q=1".Length));
        Assert.That(head.HeadLength, Is.EqualTo("GET /path?q=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n".Length));
    }

    [TestCase("GET / HTTP/1.0\r\n\r\n", false)]
    [TestCase("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false)]
    [TestCase("HEAD / HTTP/1.1\nHost: x\n\n", true)]
    // RFC 9112 §9.6: "close" wins wherever it stands (the http-connection fuzz target found "close, keep-alive"
    // answered Connection: keep-alive and kept open).
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\nConnection: close, keep-alive\r\n\r\n", false)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n", false)]
    [TestCase("GET / HTTP/1.0\r\nConnection: keep-alive, CLOSE\r\n\r\n", false)]
    public void KeepAliveFollowsTheVersionAndConnection(string text, bool keepAlive)
    {
        var (status, head) = Parse(text);
        Assert.That(status, Is.EqualTo(ParseStatus.Complete));
        Assert.That(head.KeepAlive, Is.EqualTo(keepAlive));
    }

    /// <summary>RFC 9112 §3.2.2: a server MUST accept the absolute-form (it was answered 400 until the hostile
    /// request table compared it with nginx); the target handed on is its path and query.</summary>
    [TestCase("GET http://example.com/file.txt?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", "/file.txt?q=1")]
    [TestCase("GET HTTPS://example.com:8443/a/b HTTP/1.1\r\nHost: x\r\n\r\n", "/a/b")]
    [TestCase("GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n", "/")]
    [TestCase("GET http://example.com?q=1 HTTP/1.0\r\n\r\n", "/")]
    [TestCase("GET http://example.com/../secret HTTP/1.1\r\nHost: x\r\n\r\n", "/../secret")] // refused by the static root, not here
    public void TheAbsoluteFormIsAcceptedAndItsPathIsTheTarget(string text, string target)
    {
        var (status, head) = Parse(text);
        Assert.That(status, Is.EqualTo(ParseStatus.Complete));
        Assert.That(Encoding.ASCII.GetString(Encoding.ASCII.GetBytes(text), head.TargetStart, head.TargetLength), Is.EqualTo(target));
    }

    /// <summary>RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line (they were
    /// answered 400 until the hostile request table compared it with nginx). They belong to the head, so the next
    /// pipelined request starts after them; past the request-line limit they are an error, not "read more".</summary>
    [TestCase("\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")]
    [TestCase("\n\n\r\n\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")]
    public void EmptyLinesBeforeTheRequestLineAreIgnored(string text)
    {
        var (status, head) = Parse(text + "NEXT");
        Assert.That(status, Is.EqualTo(ParseStatus.Complete));
        Assert.That(Encoding.ASCII.GetString(Encoding.ASCII.GetBytes(text), head.TargetStart, head.TargetLength), Is.EqualTo("/a"));
        Assert.That(head.HeadLength, Is.EqualTo(text.Length));
    }

    [Test]
    public void AFloodOfEmptyLinesIsBounded()
    {
        Assert.That(Parse(string.Concat(Enumerable.Repeat("\r\n", 100))).Status, Is.EqualTo(ParseStatus.Incomplete));
        var (status, head) = Parse(string.Concat(Enumerable.Repeat("\r\n", HttpRequestParser.MaxRequestLine / 2)) + "GET / HTTP/1.0\r\n\r\n");
        Assert.That(status, Is.EqualTo(ParseStatus.Invalid));
        Assert.That(head.ErrorStatus, Is.EqualTo(400));
    }

    [TestCase("")]
    [TestCase("\r\n\r")]
    [TestCase("GET / HT")]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\n")]
    public void APartialHeadIsIncomplete(string text) => Assert.That(Parse(text).Status, Is.EqualTo(ParseStatus.Incomplete));

    [TestCase("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400)]
    [TestCase("G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400)]
    [TestCase("GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400)]
    [TestCase("GET http:///etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400)]
    [TestCase("GET http://user@x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400)]
    [TestCase("GET x/y HTTP/1.1\r\nHost: x\r\n\r\n", 400)]
    [TestCase("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 400)]
    [TestCase("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\u0001y\r\n\r\n", 400)]
    [TestCase("GET / HTTP/3\r\nHost: x\r\n\r\n", 505)]
    [TestCase("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", 413)]
    public void InvalidHeadsCarryTheirStatus(string text, int expected)
    {
        var (status, head) = Parse(text);
        Assert.That(status, Is.EqualTo(ParseStatus.Invalid));
        Assert.That(head.ErrorStatus, Is.EqualTo(expected));
    }

    [Test]
    public void ParsingAllocatesNothing()
    {
        var bytes = Encoding.ASCII.GetBytes("GET /index.html HTTP/1.1\r\nHost: example\r\nUser-Agent: wrk\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n");
        var head = new HttpRequestHead();
        HttpRequestParser.Parse(bytes, head);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            HttpRequestParser.Parse(bytes, head);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.EqualTo(0));
    }

    /// <summary>20 000 seeded mutations (byte flips, insertions, deletions, truncations, CR/LF/colon/space
    /// injection) of valid heads: the parser never throws, never reads past what it was given, reports a head
    /// length inside the input, and names one of the statuses it documents.</summary>
    [Test, CancelAfter(60_000)]
    public void FuzzedHeadsNeverBreakTheParsersPromises(CancellationToken token)
    {
        var seeds = new[]
        {
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "HEAD /x/y.html?z=1 HTTP/1.0\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n",
            "GET /%2e%2e/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nX: y\r\n\r\n",
        }.Select(Encoding.ASCII.GetBytes).ToArray();
        var random = new Random(20261123);
        var head = new HttpRequestHead();
        var specials = "\r\n: \t/%\0\u007f"u8.ToArray();
        int[] statuses = [400, 413, 414, 431, 505];
        var counts = new Dictionary<ParseStatus, int>();
        for (int i = 0; i < 20_000; i++)
        {
            token.ThrowIfCancellationRequested(); // a parser gone quadratic fails at the deadline instead of running on
            var input = seeds[random.Next(seeds.Length)].ToList();
            for (int m = random.Next(1, 5); m > 0 && input.Count > 0; m--)
            {
                int at = random.Next(input.Count);
                switch (random.Next(5))
                {
                    case 0: input[at] = (byte)random.Next(256); break;
                    case 1: input.Insert(at, specials[random.Next(specials.Length)]); break;
                    case 2: input.RemoveAt(at); break;
                    case 3: input.RemoveRange(at, input.Count - at); break;
                    default: input.InsertRange(at, Enumerable.Repeat((byte)'a', random.Next(1, 20_000))); break;
                }
            }
            var bytes = input.ToArray();
            var status = HttpRequestParser.Parse(bytes, head);
            counts[status] = counts.GetValueOrDefault(status) + 1;
            if (status == ParseStatus.Complete)
            {
                Assert.That(head.HeadLength, Is.InRange(1, bytes.Length));
                Assert.That(head.TargetStart + head.TargetLength, Is.LessThanOrEqualTo(head.HeadLength));
                Assert.That(bytes[head.TargetStart], Is.EqualTo((byte)'/'));
            }
            else if (status == ParseStatus.Invalid)
            {
                Assert.That(statuses, Does.Contain(head.ErrorStatus), $"input {i}");
            }
            else
            {
                Assert.That(bytes.Length, Is.LessThan(HttpRequestParser.MaxHead), "an oversized head must be an error, not 'read more'");
            }
        }
        // The mutations reach every outcome (else the fuzzing explores nothing).
        Assert.That(counts.Keys, Is.EquivalentTo(new[] { ParseStatus.Complete, ParseStatus.Incomplete, ParseStatus.Invalid }));
    }
}
