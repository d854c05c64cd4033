using System.Net;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>Options that cannot work are refused when the server is made, naming the option, and nothing stays bound.
/// A timeout of TimeSpan.MaxValue ("never") would otherwise overflow the first connection's deadline on the loop thread.</summary>
public sealed class HttpServerOptionsTests
{
    private static IEnumerable<TestCaseData> Refused()
    {
        yield return new TestCaseData(new HttpServerOptions { HeaderTimeout = TimeSpan.Zero }, "HeaderTimeout").SetArgDisplayNames("HeaderTimeout 0");
        yield return new TestCaseData(new HttpServerOptions { HeaderTimeout = TimeSpan.MaxValue }, "HeaderTimeout").SetArgDisplayNames("HeaderTimeout max");
        yield return new TestCaseData(new HttpServerOptions { KeepAliveTimeout = TimeSpan.MaxValue }, "KeepAliveTimeout").SetArgDisplayNames("KeepAliveTimeout max");
        yield return new TestCaseData(new HttpServerOptions { SendTimeout = TimeSpan.MaxValue }, "SendTimeout").SetArgDisplayNames("SendTimeout max");
        yield return new TestCaseData(new HttpServerOptions { SendTimeout = TimeSpan.FromDays(366) }, "SendTimeout").SetArgDisplayNames("SendTimeout 366 days");
        yield return new TestCaseData(new HttpServerOptions { ThreadCount = 0 }, "ThreadCount").SetArgDisplayNames("ThreadCount 0");
    }

    [TestCaseSource(nameof(Refused))]
    public void AnUnworkableOptionIsRefusedWhenTheServerIsMade(HttpServerOptions options, string name)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => HttpServer.Hello(new IPEndPoint(IPAddress.Loopback, 0), options).Dispose());
        Assert.That(e!.ParamName, Does.EndWith(name));
    }

    [Test]
    public void A365DayTimeoutIsTakenAndServes()
    {
        var year = TimeSpan.FromDays(365);
        using var server = HttpServer.Hello(new IPEndPoint(IPAddress.Loopback, 0),
            new HttpServerOptions { HeaderTimeout = year, KeepAliveTimeout = year, SendTimeout = year, ThreadCount = 1 });
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var response = client.GetAsync($"http://127.0.0.1:{server.Endpoint.Port}/").WaitAsync(TimeSpan.FromSeconds(15)).GetAwaiter().GetResult();
        Assert.That((int)response.StatusCode, Is.EqualTo(200));
    }
}
