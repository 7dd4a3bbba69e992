# Reference values for tests/evaluation/test_statistics.py, computed with R's pROC:
#   Rscript tests/evaluation/data/delong_reference.R
library(pROC)
d <- read.csv("tests/evaluation/data/delong_reference.csv")
model <- roc(d$label, d$model, levels = c(0, 1), direction = "<", quiet = TRUE)
bern <- roc(d$label, d$bern, levels = c(0, 1), direction = "<", quiet = TRUE)
cat(sprintf("pROC %s\n", packageVersion("pROC")))
cat(sprintf("auc_model %.10f var_model %.10g ci_model %.10f %.10f\n", auc(model), var(model, method = "delong"), ci.auc(model, method = "delong")[1], ci.auc(model, method = "delong")[3]))
cat(sprintf("auc_bern %.10f var_bern %.10g\n", auc(bern), var(bern, method = "delong")))
t <- roc.test(model, bern, method = "delong", paired = TRUE)
cat(sprintf("delong_z %.10f delong_p %.10g\n", t$statistic, t$p.value))
cat(sprintf("cov %.10g\n", cov(model, bern, method = "delong")))
